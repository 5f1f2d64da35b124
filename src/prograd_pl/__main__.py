"""``python -m prograd_pl [overrides]`` (the Hydra app) and the ``report | interpret | data | diff | weights``
sub-commands."""

from __future__ import annotations

import sys

SUBCOMMANDS = ("report", "interpret", "data", "diff", "weights")


def _hydra_main() -> None:
    import hydra
    from omegaconf import DictConfig

    import prograd_pl.app.config  # noqa: F401  (registers the recipe resolvers before Hydra composes)
    from prograd_pl.errors import USER_ERRORS

    @hydra.main(version_base="1.3", config_path="pkg://prograd_pl.conf", config_name="config")
    def main(cfg: DictConfig) -> dict | None:
        from prograd_pl.app.logs import capture_run_log, setup_console

        setup_console()  # one console stream, each record once
        with capture_run_log():  # everything this job logs also goes to <run_dir>/log.txt
            return job(cfg)  # the result reaches the sweep's summary (prograd_pl.sweep.SweepSummary)

    def job(cfg: DictConfig) -> dict | None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from prograd_pl.app.sweep_failures import record_failure

        try:
            preflight_weights(cfg)  # a tag not on this machine ends here, before the heavy imports
            from prograd_pl.app.run import run

            result = run(cfg)
        except USER_ERRORS as err:  # one clear sentence, no traceback
            print(f"prograd_pl: error: {err}", file=sys.stderr)
            hc = HydraConfig.get()
            if hc.mode == RunMode.MULTIRUN and cfg.get("continue_on_error", True) is True:
                record_failure(hc.runtime.output_dir, str(err), list(hc.overrides.task))
                return  # the other jobs run; the sweep exits 1 at its end (ReportFailedJobs)
            sys.exit(1)
        except Exception as err:  # a job of a sweep that failed otherwise: named at the sweep's end, traceback kept
            hc = HydraConfig.get()
            if hc.mode != RunMode.MULTIRUN or cfg.get("continue_on_error", True) is not True:
                raise
            reason = record_failure(hc.runtime.output_dir, err, list(hc.overrides.task))
            print(f"prograd_pl: error: {reason}", file=sys.stderr)
            return None
        print(f"{result['method']} {result['eval_dataset']} ({result['subsample']}): "
              f"acc {result['metrics']['acc']:.2f}%  -> {result['run_dir']}"
              f"{'  (finished before: read back, not rerun)' if result.get('skipped') else ''}")
        return result

    main()


def preflight_weights(cfg) -> None:
    """The run's option checks, the dataset's folder, then whether the model's weights can be had
    (:func:`prograd_pl.models.weights.preflight`), before the heavy imports: a tag not on this machine ends in
    seconds."""
    from omegaconf import OmegaConf

    from prograd_pl.app.config import check, resolve
    from prograd_pl.data.registry import quick_check

    resolved = resolve(cfg)
    check(resolved)
    from prograd_pl.startup import import_heavy

    import_heavy()  # torch, Lightning, open_clip (~4 s): only once the options are checked, Ctrl-C held meanwhile
    from prograd_pl.models.weights import preflight

    options = OmegaConf.to_container(resolved.dataset)
    quick_check(str(resolved.dataset.name), str(resolved.data_root), options)
    pretrained = resolved.model.get("pretrained")
    preflight(str(resolved.model.name), None if pretrained is None else str(pretrained))


_MODE_FLAGS = {"-m": "--multirun", "--multirun": "--multirun", "-c": "--cfg", "--cfg": "--cfg", "-i": "--info",
               "--info": "--info", "-sc": "--shell-completion", "--shell-completion": "--shell-completion",
               "-r": "--run", "--run": "--run"}  # fmt: skip


def hydra_modes(argv: list[str]) -> list[str]:
    """Hydra's mode flags in ``argv`` (``--multirun``, ``--cfg`` ...), each once, in order: Hydra takes only one."""
    found = [_MODE_FLAGS.get(a.split("=", 1)[0]) for a in argv if a.startswith("-")]
    return list(dict.fromkeys(f for f in found if f))


def hoist_multirun(argv: list[str]) -> list[str]:
    """Move ``-m``/``--multirun`` before the overrides.

    Hydra's argument parser cannot take overrides on both sides of ``-m``, yet the natural line
    ``python -m prograd_pl dataset=dtd shots=4 -m seed=1,2,3`` puts it in the middle.
    """
    flags = [a for a in argv if a in ("-m", "--multirun")]
    return [*flags[:1], *(a for a in argv if a not in ("-m", "--multirun"))]


def cli(argv: list[str] | None = None) -> int:
    """Console entry point: a sub-command, or the Hydra app with ``argv`` as overrides."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        cmd, rest = argv[0], argv[1:]
        if cmd == "report":
            from prograd_pl.results.report import main as report_main

            return report_main(rest)
        if cmd == "interpret":
            from prograd_pl.results.interpret import main as interpret_main

            return interpret_main(rest)
        if cmd == "diff":
            from prograd_pl.results.diff import main as diff_main

            return diff_main(rest)
        if cmd == "weights":
            from prograd_pl.models.weights import main as weights_main

            return weights_main(rest)
        from prograd_pl.data.cli import main as data_main

        return data_main(rest)
    if any(a in ("-h", "--help") for a in argv):  # this page, without importing Hydra or the app
        from prograd_pl.cli_help import help_text

        print(help_text(SUBCOMMANDS))
        return 0
    modes = hydra_modes(argv)
    if len(modes) > 1:
        print(f"prograd_pl: error: {' and '.join(modes)} cannot be given together (Hydra does one of them per "
              "command); `--cfg job` prints one run's composed config, `-m` launches the sweep.", file=sys.stderr)  # fmt: skip
        return 1
    sys.argv = [sys.argv[0], *hoist_multirun(argv)]
    try:
        from prograd_pl.app.precheck import precheck, precheck_sweep

        problem = precheck(argv, preflight_weights)  # before Hydra creates <output_root>/.hydra/...
        problems = [problem] if problem is not None else precheck_sweep(argv, preflight_weights)  # a multirun's jobs
        if problems:
            for line in problems:
                print(f"prograd_pl: error: {line}", file=sys.stderr)
            return 1
        _hydra_main()
    except KeyboardInterrupt:  # Ctrl-C outside training (which saves and exits 130 itself): no traceback
        print("prograd_pl: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli())
