"""A nested command's session access: given at run time like secret variables, the token
scrubbed from the output, refused clearly where the engine cannot be reached."""

from __future__ import annotations

import pytest

from dirk.errors import NestingError
from dirk.solver.exec_container import _nesting_access
from dirk.solver.exec_secrets import NO_SECRETS, with_session_access
from dirk.solver.job import SessionAccess
from dirk.solver.ops import Exec, Ref, Scratch

TOKEN = "s3cr3t-session-token-value"


def test_the_variables_are_secret_env_and_the_token_is_masked() -> None:
    secrets = with_session_access(NO_SECRETS, SessionAccess(4321, TOKEN))
    assert secrets.env == ("DAGGER_SESSION_PORT=4321", f"DAGGER_SESSION_TOKEN={TOKEN}")
    assert secrets.scrubber.scrub(f"token={TOKEN}\n".encode()) == b"token=***\n"
    assert TOKEN not in repr(SessionAccess(4321, TOKEN))


def test_nesting_without_an_engine_port_or_a_network_is_refused() -> None:
    op = Exec(root=Ref(Scratch()), args=("sh",), nesting=True)
    with pytest.raises(NestingError, match="TCP port"):
        _nesting_access(op, None)
    offline = Exec(root=Ref(Scratch()), args=("sh",), nesting=True, network=False)
    with pytest.raises(NestingError, match="network"):
        _nesting_access(offline, SessionAccess(1, TOKEN))
