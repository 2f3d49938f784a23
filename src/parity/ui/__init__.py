"""The web UI (`parity ui`, or mounted in `parity serve --ui`): a catalog, lineage, registry
history, models, rollouts, monitoring and duplicate features, over the other layers, read-only
except the rollout actions a scope allows. JSON under /ui/api (in the OpenAPI spec), pages
rendered in the browser from files shipped in this package (no CDN)."""
