"""Fakes of componentize-py's generated bindings for wit/plugin.wit, with the
same shapes (`componentize-py -d wit -w <world> bindings OUT` writes the real
ones), so the glue in `switchyard._guest` and `guest/` runs natively."""
