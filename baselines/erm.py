"""ERM (paper eq. 1): plain empirical risk minimisation, the reference every method starts from."""
from __future__ import annotations

from harness.engine.context import TRAIN_KEYS, RunContext
from harness.engine.methods import Method, MethodResult, register


@register
class ERM(Method):
    name = "erm"
    title = "ERM"  # the shared training defaults are its settings (harness.engine.hparams_registry)
    table_rank = 0  # the paper's rows: ERM, JTT, SLIM_Tr, SLIM_Val, DFR, GroupDRO

    def fit(self, ctx: RunContext) -> MethodResult:
        reference = ctx.reference_hparams()
        if all(self.hparams.get(k) == reference.get(k) for k in TRAIN_KEYS):
            model, selection = ctx.reference_model()  # the shared, cached reference f_r
            return MethodResult(model=model, selection=selection, details={"history": ctx.reference_history()})
        model = ctx.new_model()  # e.g. group-balanced sampling or another selection criterion
        result = ctx.train(model, self.hparams, desc=f"ERM {ctx.arch} seed {ctx.seed}")
        details = {"history": result.history}
        if self.hparams.get("sampler") == "group_balanced":
            details["method_label"] = "ERM (group-balanced)"
        return MethodResult(model=model, selection=result.selection, details=details)
