"""Building a config's model outside the Runner (analysis tools, tests)."""
__all__ = ['build_model_from_cfg']


def build_model_from_cfg(cfg, drop_pretrained: bool = True):
    """Build ``cfg.model`` as the Runner would, in the config's default scope.

    Returns ``(model, scope)``. Like the Runner, a top-level ``data_preprocessor`` fills in the
    model's, and SyncBN becomes BN (no process group here). ``drop_pretrained`` removes the
    backbone's ``init_cfg`` (shipped configs point at official weights that may not be on disk).
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    if drop_pretrained and cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None
    if cfg.get('data_preprocessor') is not None:
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    return revert_sync_batchnorm(registry.build(cfg.model)), scope
