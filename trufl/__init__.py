"""trufl: learned dequantisers for categorical data — TRUFL, CatNF and Argmax flows."""

__version__ = "0.1.0"


def _register_resolvers() -> None:
    """``${trufl_run_dir:<ckpt_path>,<default>}`` (conf/hydra/default.yaml): a run resumed from
    ``<run dir>/checkpoints/<name>.ckpt`` continues in that run directory."""
    from pathlib import Path

    from omegaconf import OmegaConf

    def run_dir(ckpt_path, default: str) -> str:
        path = Path(str(ckpt_path)) if ckpt_path else None
        return str(path.parent.parent) if path is not None and path.parent.name == "checkpoints" else default

    if not OmegaConf.has_resolver("trufl_run_dir"):
        OmegaConf.register_new_resolver("trufl_run_dir", run_dir)


_register_resolvers()
