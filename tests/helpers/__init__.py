"""What the suite's tests share, one idea a module; test modules and conftests import from here, never each other.

* ``services``: PostgreSQL and Redis on the machine, quotas off, and how a missing service skips (or fails in CI).
* ``processes``: real ``rejoinder`` processes (``serve``, ``keys create``), waited for and ended whatever happens.
* ``bots``: bot directories written for a test, and the example shop.
* ``clients``: a customer's calls over HTTP (start a conversation, say something).
* ``app``: the app in this process, driven through httpx over ASGI.
* ``site``: a business's web site and the browser page's errors, for the browser tests.
* ``disk``: a file system that runs out of space.
* ``tables``: the sessions table written directly (a further session opened, or one ended at once).
"""
