"""Staging directives and their backends.

* :mod:`.directives`: parse and expand directives, decide where each step runs,
  resolve ``client:// pilot:// resource:// unit:// file:// globus://`` URLs;
* :mod:`.local`: COPY, LINK, MOVE, TRANSFER and TARBALL between local paths;
* :mod:`.worker`: a staging thread, and the steps the agent runs;
* :mod:`.globus`: batched, bounded Globus transfers (globus-sdk v4);
* :mod:`.parsl`: a Parsl ``Staging`` provider for ``globus://`` files.

Importing this package imports none of them; the agent imports only the light ones,
and globus-sdk is loaded only when a ``globus://`` directive is staged.
"""
