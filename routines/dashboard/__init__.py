"""A web page to watch and operate a durable store (extra `routines[dashboard]`).

```python
from routines import dashboard

wsgi_app = dashboard.app(store, monitor=monitor)  # mount it behind the app's login
```

`app()` returns a WSGI application: the overview (every queue's jobs by state, paused and
backlogged queues, schedules, migrations, leases, and with `monitor` the process's routines),
a queue's jobs, one job, a schedule's runs; and the actions retry, cancel, run now, retry all
failed, pause and resume, each a form POSTed with a CSRF token. It is a view over the public
API of `routines.durable`. It has no login of its own: docs/dashboard.md shows it behind
Flask's and Django's; `routines dashboard` serves it on its own, on 127.0.0.1.
"""

from __future__ import annotations

from ._app import app

__all__ = ["app"]
