"""MiniCPM3 model code that needs torch but not axolotl: transformers fixes, the packing guard."""
