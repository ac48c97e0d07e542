from common.migrations import run_env
from svc_matching.models import Base

run_env(Base.metadata)
