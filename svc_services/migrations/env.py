from common.migrations import run_env
from svc_services.models import Base

run_env(Base.metadata)
