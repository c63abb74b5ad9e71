"""Who may say what to pixelsd: roles and authorization (policy.py, pure), per-peer limits
(limits.py, pure), CURVE key files and the allow list (keys.py), and the ZAP handler (zap.py)."""
