"""Fine-tuning on a labelled catalog (build time only: imports torch; the
``build`` extra). The server never imports this package."""
