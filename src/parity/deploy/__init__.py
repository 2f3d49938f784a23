"""The lifecycle's control loops: rollouts (shadow, canary ramp, gates, promote/rollback)."""
