"""Types of perfgate's public names (perfgate/__init__.py loads them lazily)."""

from perfgate.history.location import (
    HistoryError as HistoryError,
)
from perfgate.history.store import (
    HistoryStore as HistoryStore,
)
from perfgate.judge.changepoint import (
    HistoryPolicy as HistoryPolicy,
    judge_history as judge_history,
)
from perfgate.judge.sequential import (
    SequentialPlan as SequentialPlan,
    judge_live as judge_live,
)
from perfgate.judge.verdict import (
    JudgePolicy as JudgePolicy,
    judge_against_baseline as judge_against_baseline,
)
from perfgate.report.render import (
    render_report as render_report,
)
from perfgate.schema.result import (
    Result as Result,
    ResultError as ResultError,
    SaturationResult as SaturationResult,
    iter_results as iter_results,
    read_result as read_result,
    read_saturation as read_saturation,
)
from perfgate.schema.status import (
    FaultClass as FaultClass,
    count_statuses as count_statuses,
    status_group as status_group,
)
from perfgate.schema.verdict import (
    CaseVerdict as CaseVerdict,
    Judgement as Judgement,
    MetricVerdict as MetricVerdict,
    VerdictsFile as VerdictsFile,
    VerdictsFileError as VerdictsFileError,
    load_verdicts as load_verdicts,
)
from perfgate.session.outcome import (
    CaseFailed as CaseFailed,
    CaseOutcome as CaseOutcome,
)
from perfgate.session.run import (
    PerfSession as PerfSession,
)
from perfgate.session.settings import (
    Settings as Settings,
)
from perfgate.sim import (
    SimConfig as SimConfig,
    build_app as build_app,
)

__version__: str
__all__: list[str]
