"""minecli core: the registry, the interfaces and the estimation machinery."""
