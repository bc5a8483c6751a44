"""Sandboxes for tenant code: the protocol spoken inside them (:mod:`.session`), the host side
of that protocol (:mod:`.remote`), and the local jail (:mod:`.jail`, :mod:`.zygote`)."""
