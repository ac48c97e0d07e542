from common.migrations import run_env
from svc_residents.models import Base

run_env(Base.metadata)
