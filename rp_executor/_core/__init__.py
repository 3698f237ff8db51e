"""The engine no user imports: the state engine and callbacks (:mod:`.lifecycle`), the
journal, the wire, binding units to pilots, pickled calls, providers and checked
attributes. Importing this package imports none of them."""
