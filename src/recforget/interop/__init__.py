"""Models users already have: adapters between recforget's ALS and other libraries.

One module per library, each importing that library only inside the functions that need it:

* :mod:`recforget.interop.implicit`: implicit's ``AlternatingLeastSquares`` and its ``.npz``;
* :mod:`recforget.interop.lenskit`: LensKit's ``ImplicitMFScorer`` / ``BiasedMFScorer``
  through a pickle-free state directory;
* :mod:`recforget.interop.cornac`: Cornac's ``MF`` / ``BPR`` model objects.

Each ``from_*`` function returns a fitted :class:`~recforget.ALS` whose parameters reproduce
the other library's training objective (see docs/interop.md), so :func:`recforget.forget`
minimises that objective on the remaining data; each ``to_*`` function writes the result back
in the other library's form.
"""

__all__ = ["cornac", "implicit", "lenskit"]
