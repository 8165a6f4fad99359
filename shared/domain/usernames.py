"""What an API user name is: a POSIX user name, the account a task could one day run as.

Kept in the domain because more than users check it: a job list's ``owner`` filter and a
template's ``allowedUsers`` refuse what no user could be called.
"""

from __future__ import annotations

import re

USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")

NAME_RULE = (
    "a letter or _ first, then letters, digits, _ . - (32 characters at most, as a POSIX user name)"
)
"""What a user name is, said by every refusal of one."""
