"""Config → validated → translated → published snapshot; the last good snapshot is kept."""
