"""The `recjax` command: train, evaluate and recommend. Thin: the work lives in the library."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from recjax.config import ExperimentConfig, load_experiment
from recjax.data.report import DataFormatError
from recjax.data.sources import DataConfig
from recjax.sharding.mesh import parse_mesh

DEFAULT_RUNS = Path("runs")
# Errors a user can cause and fix (bad paths, data, configs, ids): one line, no traceback.
_USER_ERRORS = (OSError, DataFormatError, KeyError, ValueError, TypeError, ImportError, SyntaxError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print(
            f"recjax {args.command}: interrupted (a training run resumes from its last "
            "checkpoint when the same command is run again)",
            file=sys.stderr,
        )
        return 130
    except _USER_ERRORS as error:
        if args.debug:
            raise
        print(f"recjax {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 1


def _one_line(error: BaseException) -> str:
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    if isinstance(error, SyntaxError):
        return f"{error.filename}:{error.lineno}: {error.msg}"
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recjax", description=__doc__)
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    mesh_option = argparse.ArgumentParser(add_help=False)
    mesh_option.add_argument(
        "--mesh",
        help="device mesh, e.g. data=2,model=4 (-1: the remaining devices; default: the config's)",
    )
    commands = parser.add_subparsers(dest="command")

    train = commands.add_parser(
        "train",
        parents=[debug, mesh_option],
        help="train, evaluate and index (default: embedded data)",
    )
    train.add_argument(
        "--config",
        help="experiment file[:variant], e.g. "
        "experiments/online_retail.py:smoke (default: the embedded-data job)",
    )
    train.add_argument("--workdir", type=Path, help="run directory (default: runs/<name>)")
    train.add_argument(
        "--data",
        help="data file or folder, overriding the config's path; tfds:NAME (e.g. "
        "tfds:1m-ratings) reads MovieLens through TensorFlow Datasets when online",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    cluster = train.add_argument_group(
        "multi-process training (one process per host; default: $RECJAX_COORDINATOR etc.)"
    )
    cluster.add_argument(
        "--coordinator", metavar="HOST:PORT", help="process 0's address, or 'auto' (TPU, SLURM)"
    )
    cluster.add_argument("--num-processes", type=int, metavar="N", help="processes in the job")
    cluster.add_argument("--process-id", type=int, metavar="I", help="this process: 0 ... N-1")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser(
        "evaluate", parents=[debug, mesh_option], help="re-evaluate a run's latest checkpoint"
    )
    evaluate.add_argument("--workdir", type=Path, required=True)
    evaluate.add_argument("--no-progress", action="store_true")
    evaluate.set_defaults(run=_evaluate)

    recommend = commands.add_parser(
        "recommend", parents=[debug, mesh_option], help="top-k items for one user of a run"
    )
    recommend.add_argument("--workdir", type=Path, required=True)
    recommend.add_argument("--user", required=True, help="raw user id, as in the data")
    recommend.add_argument("--k", type=int, default=10)
    recommend.add_argument(
        "--funnel",
        action="store_true",
        help="the whole funnel (needs `recjax train-ranker`): every stage's scores and latency",
    )
    recommend.set_defaults(run=_recommend)

    train_ranker = commands.add_parser(
        "train-ranker", parents=[debug], help="train a run's multi-task ranker (for --funnel)"
    )
    train_ranker.add_argument("--workdir", type=Path, required=True, help="a trained run")
    train_ranker.add_argument("--max-steps", type=int, help="stop early (default: 2 epochs)")
    train_ranker.add_argument("--no-progress", action="store_true")
    train_ranker.set_defaults(run=_train_ranker)

    export = commands.add_parser(
        "export", parents=[debug], help="write a self-contained serving bundle of a run"
    )
    export.add_argument("--workdir", type=Path, required=True)
    export.add_argument("--out", type=Path, required=True, help="new bundle directory")
    export.set_defaults(run=_export)

    serve = commands.add_parser(
        "serve",
        parents=[debug],
        help="serve a bundle over HTTP (JSON API): through the funnel when it has a ranker",
    )
    serve.add_argument("--bundle", type=Path, required=True)
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: localhost)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--request-log",
        default="requests.jsonl",
        help="JSON Lines log of every served response (rotated)",
    )
    serve.add_argument(
        "--cache-seconds",
        type=float,
        default=2.0,
        help="identical queries this close reuse the user vector (0: off)",
    )
    serve.set_defaults(run=_serve)

    drift = commands.add_parser(
        "drift", parents=[debug], help="hit rate, calibration and score drift of a request log"
    )
    drift.add_argument("--log", required=True, help="request log; rotated LOG.N files are read too")
    drift.add_argument(
        "--outcomes",
        required=True,
        help="what happened later: CSV user,item[,timestamp] or JSON Lines",
    )
    drift.add_argument(
        "--score-stage", help="stage to calibrate and compare (default: last in the funnel)"
    )
    drift.add_argument(
        "--split-ts",
        type=float,
        help="unix seconds where the second window starts (default: median)",
    )
    drift.add_argument("--out", help="also write the JSON report here")
    drift.set_defaults(run=_drift)
    return parser


def _train(args: argparse.Namespace) -> int:
    from recjax.main_job import train_and_evaluate
    from recjax.sharding.distributed import DistributedConfig, initialize

    config = load_experiment(args.config) if args.config else ExperimentConfig()
    if args.data:
        config = dataclasses.replace(config, data=_data_override(config.data, args.data))
    if args.mesh:
        config = dataclasses.replace(config, mesh=parse_mesh(args.mesh))
    workdir = args.workdir or DEFAULT_RUNS / config.name
    # Before anything touches JAX: a multi-process job must be joined first.
    initialize(
        DistributedConfig(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    )
    train_and_evaluate(config, workdir, progress=not args.no_progress)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from recjax.main_job import evaluate_workdir

    mesh = parse_mesh(args.mesh) if args.mesh else None
    evaluate_workdir(args.workdir, mesh=mesh, progress=not args.no_progress)
    return 0


def _data_override(data: DataConfig, value: str) -> DataConfig:
    """`--data PATH` keeps the config's format; `--data tfds:NAME` reads MovieLens through
    TensorFlow Datasets (e.g. tfds:1m-ratings; needs network and the tfds extra)."""
    if value.startswith("tfds:"):
        return dataclasses.replace(data, format="tfds_movielens", path=value.removeprefix("tfds:"))
    if not Path(value).exists():
        raise FileNotFoundError(f"--data {value}: no such file or folder")
    return dataclasses.replace(data, path=value)


def _recommend(args: argparse.Namespace) -> int:
    from recjax.main_job import load_config, load_data
    from recjax.recommend import recommend
    from recjax.training.trainer import restore_trained

    if args.k < 1:
        raise ValueError(f"--k must be at least 1, got {args.k}")
    if args.funnel:
        from recjax.funnel_job import response_lines, run_funnel

        print("\n".join(response_lines(run_funnel(args.workdir, args.user, k=args.k))))
        return 0
    config = load_config(args.workdir)
    if args.mesh:
        config = dataclasses.replace(config, mesh=parse_mesh(args.mesh))
    data = load_data(config, say=lambda _: None)
    trained = restore_trained(config, data, args.workdir)
    items = recommend(data, trained, args.user, k=args.k, exclude_seen=config.eval.exclude_seen)
    seen = "excluded" if config.eval.exclude_seen else "kept"
    print(
        f"# top {len(items)} for user {args.user} after all their events "
        f"(items they had before: {seen}; catalogue: {len(data.items.ids):,} items)"
    )
    for rank, item in enumerate(items, start=1):
        print(f"{rank:>3}  {item.score:7.4f}  {item.item:<12}  {item.text}")
    return 0


def _train_ranker(args: argparse.Namespace) -> int:
    from recjax.ranker_job import train_run_ranker

    train_run_ranker(args.workdir, max_steps=args.max_steps, progress=not args.no_progress)
    return 0


def _export(args: argparse.Namespace) -> int:
    from recjax.export.exporter import export_run

    export_run(args.workdir, args.out)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from recjax.export.ranker import RANKER_DIR
    from recjax.serving.http import ServerConfig, serve
    from recjax.serving.recommender import Recommender, ServingConfig

    serving = ServingConfig(cache_seconds=args.cache_seconds)
    if (args.bundle / RANKER_DIR).is_dir():  # The whole funnel; else the two stages.
        from recjax.serving.funnel import Funnel

        service = Funnel(args.bundle, serving=serving)
    else:
        service = Recommender(args.bundle, serving)
    serve(service, ServerConfig(host=args.host, port=args.port, request_log=args.request_log))
    return 0


def _drift(args: argparse.Namespace) -> int:
    from recjax.serving.drift import run_drift

    run_drift(
        args.log,
        args.outcomes,
        score_stage=args.score_stage,
        split_ts=args.split_ts,
        output=args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
