"""Foundations every layer uses: errors, console output, config resolution, geometry on the
sphere, safe readers, versioned artifacts, the label format, memory checks and the CPU runtime."""
