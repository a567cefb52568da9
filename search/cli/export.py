"""``actsearch export``: a run's candidate as a standalone torch module file (``search.analysis.export``)."""
from __future__ import annotations

import re

from search.cli.common import open_run, output_file
from search.language.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("export", help="write a candidate as a standalone torch module file",
                       description="A Python file needing only torch: an nn.Module with per-channel betas, the "
                                   "formula and the provenance (run, rank, reward, significance) in its docstring.")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("candidate", metavar="RANK|EXPRESSION", help="a rank of `actsearch top`, or an expression text")
    p.add_argument("-o", "--output", required=True, metavar="FILE.py")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("--class-name", default="SearchedActivation", help="the module's class name")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from search.analysis.export import write_export
    from search.analysis.formatting import display_text
    from search.analysis.ranking import current_analysis, ranked
    from search.language.expression import Expression

    output = output_file(args.output, "-o", "my_activation.py", (".py",))  # never a run's own files
    run_dir, config, store = open_run(args.run_dir)
    with store:
        target = args.candidate.strip()
        if re.fullmatch(r"[-+]?\d+", target, re.ASCII):  # a rank (ASCII digits only: '²' is no rank)
            trained = store.evaluated()
            if len(target) > 12 or not 1 <= int(target) <= trained:
                raise UserError(f"rank {target[:20]}: out of range; {run_dir} has {trained} ranked candidate(s) "
                                f"(see `actsearch top {run_dir}`)")
            rank = int(target)
            row = ranked(store, config, rank)[rank - 1]
            expr = Expression.parse(row["text"])
        else:
            expr = Expression.parse(target)
            fingerprint = expr.fingerprint()
            row = next((r for r in ranked(store, config, max(store.evaluated(), 1))
                        if r["fingerprint"] == fingerprint), None)
        analysis = current_analysis(store, config)
    provenance: dict = {"run": str(run_dir)}
    if row is None:
        provenance["note"] = "not trained by this run"
    else:
        provenance.update(rank=row["rank"], candidate=row["index"], reward=row["reward"])
        if row["status"] != "ok":  # a stopped child's reward is a part-trained score; a failed one's, a penalty
            metrics = row.get("metrics") or {}
            provenance["status"] = (f"stopped early at step {metrics.get('rung_step')} of its child: the reward is "
                                    f"the score there" if row["status"] == "stopped" else row["status"])
        if config.rewards.minimize or config.rewards.metric != "accuracy":
            provenance.update({config.rewards.metric: config.rewards.metric_of(row["reward"]),
                               "reward is": f"-{config.rewards.metric}" if config.rewards.minimize
                               else config.rewards.metric})
        if row["evaluations"] > 1:
            provenance.update(evaluations=row["evaluations"], mean=row["mean"], sd=row["sd"])
    tested = {expr.text} | ({row["text"]} if row else set())  # any text of the function: displays show the simplest
    comparisons = [c for c in (analysis["comparisons"] if analysis else []) if c["candidate"] in tested]
    if comparisons:
        from search.analysis.significance import metric_comparisons, study_label

        provenance["significance"] = metric_comparisons(comparisons, config.rewards)  # as top and the report say them
        m = len(analysis["comparisons"])
        provenance["significance settings"] = (f"{analysis['seeds']} seeds, Holm over {m} comparison{'s' * (m != 1)}, "
                                               f"{study_label(analysis, config.to_dict()['child'])}")
    path = write_export(output, expr, provenance, force=args.force, class_name=args.class_name)
    shown = display_text(expr.text)
    print(f"wrote {path}: {expr.text}" + (f" (displays show it as {shown})" if shown != expr.text else "") +
          (f"; {provenance['status']}" if "status" in provenance else ""))
    return 0
