"""Device profiles shipped with qwdeploy, one TOML file per target (see toolkit/profiles.py)."""
