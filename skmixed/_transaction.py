"""All-or-nothing public methods: a call completes or leaves the estimator as it was.

The estimators build their fitted state by assigning attributes (never by mutating
arrays they already hold: streaming state is copied before it is updated), so the
instance dictionary as it was on entry *is* the previous state. :func:`transactional`
keeps a copy of that dictionary and puts it back, in one assignment, when the method raises anything
— a ``ValueError`` for bad input, a numerical failure, or ``KeyboardInterrupt`` —
so a rejected or interrupted call leaves the estimator pickle-identical and a
``partial_fit`` batch is counted once (when the call returns) or not at all.
"""

from __future__ import annotations

import functools

__all__ = ["transactional"]


def transactional(method):
    """Decorate a public method so that it commits all of its attribute changes or none.

    Examples
    --------
    >>> class Counter:
    ...     n = 0
    ...     @transactional
    ...     def add(self, k):
    ...         self.n = self.n + k
    ...         if k < 0:
    ...             raise ValueError("negative")
    ...         return self
    >>> c = Counter().add(2)
    >>> try:
    ...     c.add(-1)
    ... except ValueError:
    ...     pass
    >>> c.n
    2
    """

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        saved = dict(self.__dict__)
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.__dict__ = saved  # one assignment: a second interrupt cannot leave half of each
            raise

    return wrapper
