"""The demo district lives in `common.demo` (services must not import `deploy/`); this name stays for the
launcher's and the tests' imports."""
from common.demo import *  # noqa: F401,F403
from common.demo import _NS  # noqa: F401
