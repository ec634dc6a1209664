"""Built-in preprocessing presets (YAML); load with ``preprocess.load_config("kws")``."""
