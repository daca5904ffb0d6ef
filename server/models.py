"""Every table of every feature, for migrations and for tests that inspect storage.

Feature packages add their models module here; importing it registers the tables on the
shared metadata.
"""

from __future__ import annotations

import meeting.media.models
import meeting.models
import meeting.polls.models  # noqa: F401  (registers the tables)
import messaging.models  # noqa: F401  (registers the tables)
import server.audit
import server.auth.models
import server.files.models
import server.org.models
import server.realtime.models
import server.signing.models
from server.db import Base

metadata = Base.metadata

__all__ = ["metadata", "server"]
