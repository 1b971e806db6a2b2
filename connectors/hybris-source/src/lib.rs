//! hybris-source connector: being built (see its issue). Not yet a plugin.
