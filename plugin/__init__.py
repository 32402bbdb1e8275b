"""Docker volume plugin that mounts Alibaba Cloud OSS buckets with ossfs."""

__version__ = "0.1.0"
