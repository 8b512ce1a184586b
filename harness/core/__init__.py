"""Below everything: errors, CPU pinning and threads, atomic files and run records, digests, the artifact cache,
code versions, progress and the name registries.
"""
