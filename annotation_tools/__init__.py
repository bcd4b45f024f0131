"""The napari review app for review gates 1 (vessel mask) and 2 (A/V mask); also a napari plugin."""
