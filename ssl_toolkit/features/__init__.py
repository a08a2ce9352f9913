"""The features every stage shares: the on-disk format (``store``) and the extractor
(``extract``) that turns multichannel audio into them, the same for training and prediction."""
