//! s3-sink connector: being built (see its issue). Not yet a plugin.
