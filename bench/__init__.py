"""Benchmarks of the plugin against a bare Flask floor and rclone's Docker volume plugin.

Run from the repository root as ``python3 -m bench`` (root, FUSE and s3fs
needed). The scripts print ratios measured side by side in one run; they are
not timed tests and CI does not run them.
"""
