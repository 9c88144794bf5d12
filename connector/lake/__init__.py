"""What lands on disk or object storage: schema normalisation, writer, state, output, locks, manifest, snapshot."""
