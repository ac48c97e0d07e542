from common.migrations import run_env
from svc_metrics.models import Base

run_env(Base.metadata)
