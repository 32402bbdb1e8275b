"""Building the ossfs command line from a VolumeConfig.

The result is an argv list; ossfs is never run through a shell. Credentials
never appear in it: ossfs reads them from the passwd file named by
``passwd_file``.
"""

from .options import FuseOption

# Network limits that let ossfs report an unreachable endpoint by itself
# before the plugin's mount time limit (20 s by default) kills it: a refused
# connection fails at once, a silent server after readwrite_timeout per try.
# A user value in other_opts replaces each of them.
DEFAULT_FUSE_OPTIONS = (
    FuseOption("connect_timeout", "5"),
    FuseOption("readwrite_timeout", "8"),
    FuseOption("retries", "2"),
)


# ossfs writes errors to its log file only from this level up. The plugin
# reads that file to explain a failed mount.
DEFAULT_LOG_LEVEL = FuseOption("dbglevel", "err")


def plugin_fuse_options(config, passwd_file, logfile):
    """Return the options the plugin sets for every mount of ``config``."""
    options = [FuseOption("url", config.url)]
    if config.ram_role is not None:
        options.append(FuseOption("ram_role", config.ram_role))
    else:
        options.append(FuseOption("passwd_file", passwd_file))
    if config.region is not None:
        options += [FuseOption("sigv4"), FuseOption("region", config.region)]
    if config.allow_other:
        options.append(FuseOption("allow_other"))
    if config.no_stat_cache:
        options.append(FuseOption("max_stat_cache_size", "0"))
    # NOTE: logfile was checked with s3fs 1.90, from which ossfs 1.91 is
    # derived; an ossfs without it would refuse to mount.
    options.append(FuseOption("logfile", logfile))
    user_keys = {option.key for option in config.fuse_options}
    defaults = DEFAULT_FUSE_OPTIONS + (DEFAULT_LOG_LEVEL,)
    options += [option for option in defaults if option.key not in user_keys]
    return options


def build_argv(ossfs_bin, config, mountpoint, passwd_file, logfile):
    """Return the ossfs argv: ``ossfs BUCKET[:/PREFIX] MOUNTPOINT -o ... -o ...``.

    Each option gets its own ``-o`` so the command line reads the same in
    ``ps`` as in the logs.
    """
    argv = [ossfs_bin, config.bucket_spec, mountpoint]
    for option in plugin_fuse_options(config, passwd_file, logfile) + list(config.fuse_options):
        argv += ["-o", str(option)]
    return argv


def passwd_line(config, ak_id, ak_secret):
    """Return the passwd file content: ``bucket:ak_id:ak_secret`` and a newline."""
    return f"{config.bucket}:{ak_id.reveal()}:{ak_secret.reveal()}\n"
