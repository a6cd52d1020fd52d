"""The `vistas` command line: train | export | check-parity | eval | serve | index | deploy | demo | bench.

Each subcommand imports its package lazily, so `vistas serve` never loads torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from vistas.training.config import load_config
    from vistas.training.train import train

    config = load_config(args.config)
    workdir = Path(args.workdir or Path("runs") / Path(args.config.partition(":")[0]).stem)
    final = train(config, workdir, resume=not args.no_resume, progress=not args.no_progress)
    print(f"final checkpoint: {final}")
    return 0


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 4,8,16; got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _export(args: argparse.Namespace) -> int:
    if args.quantize:
        from vistas.export.quantize import export_quantized, format_report

        eval_config = args.eval_config or "siglip_shapes_digits"
        eval_config = None if eval_config == "none" else eval_config
        spec = export_quantized(args.source, args.out, args.quantize, name=args.name, eval_config=eval_config,
                                processor=args.processor, patch_sizes=args.patch_sizes)
        if spec.patch_sizes:
            _print_patch_sizes(spec.patch_sizes)
    else:
        from vistas.export.onnx_export import export_checkpoint

        spec = export_checkpoint(args.source, args.out, name=args.name, processor=args.processor,
                                 patch_sizes=args.patch_sizes)
        if args.patch_sizes and args.eval_config not in (None, "none"):
            from vistas.export.flexi_eval import measure_patch_sizes

            _print_patch_sizes(measure_patch_sizes(args.out, args.eval_config))
    print(json.dumps({"bundle": str(args.out), "name": spec.name, "space_id": spec.space_id, "parity": spec.parity}, indent=2))
    if spec.quantization:
        print(format_report(spec.quantization))
    return 0


def _print_patch_sizes(patch_sizes: dict[int, dict]) -> None:
    for p, info in sorted(patch_sizes.items()):
        accs = ", ".join(f"{k.removesuffix('/accuracy')} {v:.3f}" for k, v in info.get("eval", {}).items()
                         if k.endswith("/accuracy"))
        print(f"patch size {p:>2}: {info['tokens']:>4} tokens, {info['flops'] / 1e6:8.1f} MFLOPs; {accs}")


def _check_parity(args: argparse.Namespace) -> int:
    from vistas.export.parity import check_parity, passed

    report = check_parity(args.source, processor=args.processor, reference=args.reference, bundle=args.bundle)
    print(f"max abs difference, {args.source} (tolerance {args.tolerance:g})")
    print(f"{'':24s}{'image':>12s}{'text':>12s}{'logits':>12s}")
    for row, diffs in report.items():
        print(f"{row:24s}" + "".join(f"{diffs[k]:12.2e}" for k in ("image", "text", "logits")))
    if "torch_vs_transformers" not in report:
        print("no transformers reference for this source: pass --reference hf:DIR (the same weights as a "
              "Hugging Face checkpoint) to compare with transformers")
    ok = passed(report, args.tolerance)
    print("PARITY OK" if ok else "PARITY FAILED")
    return 0 if ok else 1


def _eval(args: argparse.Namespace) -> int:
    # Wiring only: the recipe's eval suites (vistas.training.batches, torch-free) measured on the
    # bundle through the serving runtime, i.e. on what users actually serve.
    from vistas.inference.model import load_model
    from vistas.training.batches import BatchMaker
    from vistas.training.config import load_config
    from vistas.training.evaluate import run_suites

    model = load_model(args.bundle)
    suites = BatchMaker(load_config(args.config), model.spec.preprocess.image).eval_suites()
    results = run_suites(model.embed_images, model.embed_texts, suites)
    if args.gallery:
        from vistas.demo import gallery_precision

        results.update(gallery_precision(model, args.gallery))
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from vistas.serving.server import serve

    serve(args.bundle, index_dir=args.index, host=args.host, port=args.port, settings_file=args.settings,
          **({"runtime": args.runtime} if args.runtime else {}))
    return 0


def _index_config(args: argparse.Namespace):
    from vistas.index import IndexConfig

    return IndexConfig(factory=args.index, target_recall=args.target_recall, memory_budget=int(args.memory_gb * 2**30))


def _index_build(args: argparse.Namespace) -> int:
    from functools import partial

    from vistas.index.build import BuildConfig, build_index
    from vistas.inference.model import load_model

    model = load_model(args.bundle)
    config = BuildConfig(
        collection=args.collection, batch_size=args.batch_size, workers=args.workers, unit_size=args.unit_size,
        engine=args.engine, embeddings_out=args.embeddings_out, index=_index_config(args),
        thumbnails=not args.no_thumbnails, resume=not args.no_resume, progress=not args.no_progress,
        ray_address=args.ray_address, ray_actors=args.ray_actors,
    )
    factory = partial(load_model, args.bundle, threads=args.actor_threads)  # what each Ray actor loads
    report = build_index(args.source, args.out, model, config, model_factory=factory)
    print(report.summary())
    return 0 if report.indexed or not report.failed else 1


def _deploy_triton(args: argparse.Namespace) -> int:
    from vistas.deploy.triton_repo import TritonRepoConfig, write_triton_repository

    cfg = TritonRepoConfig(
        max_batch=args.max_batch,
        opt_batch=args.opt_batch,
        max_queue_delay_us=args.queue_delay_us,
        instances=args.instances,
        gpu=args.gpu,
        backend=args.backend,
        fp16=args.fp16,
    )
    for model_dir in write_triton_repository(args.bundle, args.out, cfg):
        print(model_dir)
    if args.backend == "tensorrt":
        print(f"build the engines on the serving GPU with: bash {Path(args.out) / 'build_engines.sh'}")
    return 0


def _index_import(args: argparse.Namespace) -> int:
    from vistas.index.build import import_shards

    print(json.dumps(import_shards(args.shards, args.out, args.collection, _index_config(args)), indent=2))
    return 0


def _index_rebuild(args: argparse.Namespace) -> int:
    from vistas.index import Collection

    # Collection.open takes the collection's lock: beside a server that holds it, this is a
    # refusal (CollectionLockedError, exit 2), never a rebuild the server then overwrites.
    with Collection.open(args.collection_dir) as coll:
        info = coll.rebuild(_index_config(args))
    print(json.dumps(info, indent=2))
    return 0


def _refusal(e: Exception) -> bool:
    """Errors that refuse a command for a reason its message states (no traceback needed)."""
    index = sys.modules.get("vistas.index")  # only ever raised once the command has imported it
    refusals = (index.CollectionLockedError, index.CollectionUnavailableError, index.StorageFullError) if index else ()
    return isinstance(e, (FileNotFoundError, ValueError, *refusals))


def _demo(args: argparse.Namespace) -> int:
    from vistas.demo import run_demo

    run_demo(host=args.host, port=args.port, workdir=args.workdir, serve=not args.no_serve)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from vistas.bench.run import main as bench_main

    return bench_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    from vistas import __version__

    p = argparse.ArgumentParser(prog="vistas", description=__doc__)
    p.add_argument("--version", action="version", version=f"vistas {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a Python config")
    t.add_argument("--config", required=True, help="configs/<recipe>.py[:key=value,...] or an installed recipe name (siglip_shapes_digits[:...])")
    t.add_argument("--workdir", help="run directory (default runs/<recipe>)")
    t.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_train)

    sources = ("a vistas checkpoint directory, hf:DIR_OR_HUB_ID (a Hugging Face SiglipModel / Siglip2Model; "
               "hub ids only through the local cache) or npz:FILE (a big_vision two-tower checkpoint)")
    processor = "for npz: a directory (or hf:DIR_OR_HUB_ID) with the tokenizer and image processor (default: the .npz's folder)"
    e = sub.add_parser("export", help="model source -> bundle (ONNX + bundle.json), parity-checked")
    e.add_argument("source", help=sources)
    e.add_argument("out")
    e.add_argument("--name", help="model name served as `model` (default: the run's or checkpoint's name)")
    e.add_argument("--processor", help=processor)
    e.add_argument("--quantize", choices=["int8"], help="dynamic int8 graphs; reports cosine to fp32 and the eval change")
    e.add_argument(
        "--eval-config",
        help="with --quantize: recipe whose eval suites measure the change (default siglip_shapes_digits; 'none': "
        "cosine on random inputs only); with --patch-sizes: recipe whose evals are measured at every patch size",
    )
    e.add_argument("--patch-sizes", type=_int_list, metavar="P,P,...",
                   help="a FlexiViT bundle: one image graph per patch size (e.g. 4,6,8,12,16), one embedding space")
    e.set_defaults(func=_export)

    c = sub.add_parser("check-parity", help="vistas (PyTorch and exported ONNX) vs transformers, max abs diff per tower")
    c.add_argument("source", help=sources)
    c.add_argument("--processor", help=processor)
    c.add_argument("--reference", help="hf:DIR_OR_HUB_ID holding the same weights for transformers (default: the source, for hf:)")
    c.add_argument("--bundle", help="check this bundle, exported from SOURCE, instead of exporting one")
    c.add_argument("--tolerance", type=float, default=1e-4)
    c.set_defaults(func=_check_parity)

    v = sub.add_parser("eval", help="zero-shot / retrieval metrics of a bundle, measured through onnxruntime")
    v.add_argument("bundle")
    v.add_argument("--config", default="siglip_shapes_digits", help="recipe (a file or an installed recipe name) whose eval suites to run")
    v.add_argument("--out", help="also write the results as JSON here")
    v.add_argument("--gallery", nargs="?", const="build/demo/gallery", metavar="DIR",
                   help="also text -> image precision@5 of the 36 colour x shape queries on the demo gallery in DIR "
                        "(default build/demo/gallery; written there first when missing)")
    v.set_defaults(func=_eval)

    s = sub.add_parser("serve", help="serve one or more bundles over HTTP")
    s.add_argument("bundle", nargs="+")
    s.add_argument("--index", help="directory of collections (from `vistas index build`); default: "
                   "$VISTAS_INDEX_DIR, else $VISTAS_DATA_DIR/index, else $XDG_DATA_HOME/vistas/index "
                   "(~/.local/share/vistas/index)")
    s.add_argument("--host", help="default 127.0.0.1 (or the settings' host)")
    s.add_argument("--port", type=int, help="default 8000 (or the settings' port)")
    s.add_argument(
        "--settings",
        help="TOML or JSON file of server settings (limits, batching, API keys, ...; see README); "
        "VISTAS_* environment variables override it",
    )
    s.add_argument(
        "--runtime",
        help="what runs the towers: 'onnx' (here, the default) or 'triton://HOST:PORT' (a remote Triton or "
        "KServe v2 server; preprocessing, classify and search stay here)",
    )
    s.set_defaults(func=_serve)

    i = sub.add_parser("index", help="batch indexing jobs")
    isub = i.add_subparsers(dest="index_command", required=True)
    def index_options(parser):
        parser.add_argument("--index", default="auto", help="'auto' (by size and memory) or a FAISS factory string, "
                            "e.g. Flat, HNSW32, IVF4096,PQ64")
        parser.add_argument("--target-recall", type=float, default=0.95, help="recall@10 that efSearch/nprobe are tuned to")
        parser.add_argument("--memory-gb", type=float, default=8.0, help="RAM the index may use (the 'auto' choice)")

    b = isub.add_parser("build", help="embed a folder / CSV / JSONL / WebDataset tars / Parquet into a collection")
    b.add_argument("--bundle", required=True)
    b.add_argument("--source", required=True,
                   help="DIR | file.csv | file.jsonl | shard.tar | 'shards/*.tar' | file.parquet | DIR of parquet")
    b.add_argument("--out", required=True, help="index directory (serve it with `vistas serve B --index OUT`)")
    b.add_argument("--collection", default="default")
    b.add_argument("--batch-size", type=int, default=64, help="images per model call")
    b.add_argument("--workers", type=int, default=2, help="decode threads (local engine)")
    b.add_argument("--unit-size", type=int, default=1024, help="listed items per commit (the resume point)")
    b.add_argument("--engine", choices=["local", "ray"], default="local")
    b.add_argument("--ray-address", help="Ray cluster address (default: a running or new local instance)")
    b.add_argument("--ray-actors", type=int, default=1, help="model replicas on the Ray cluster")
    b.add_argument("--actor-threads", type=int, default=None, help="onnxruntime threads per Ray actor")
    b.add_argument("--embeddings-out", help="also write (id, embedding, metadata) Parquet shards to this directory")
    b.add_argument("--no-thumbnails", action="store_true", help="keep no JPEG thumbnail per item")
    b.add_argument("--no-resume", action="store_true", help="start over even if an interrupted run exists")
    b.add_argument("--no-progress", action="store_true")
    index_options(b)
    b.set_defaults(func=_index_build)

    m = isub.add_parser("import", help="build a collection from embedding shards (part-*.parquet), trained once")
    m.add_argument("--shards", required=True, help="directory of part-*.parquet (e.g. from --embeddings-out)")
    m.add_argument("--out", required=True)
    m.add_argument("--collection", default="default")
    index_options(m)
    m.set_defaults(func=_index_import)

    r = isub.add_parser("rebuild", help="rebuild a collection's index (re-choose its type, compact, re-tune)")
    r.add_argument("collection_dir", help="INDEX_DIR/<collection>")
    index_options(r)
    r.set_defaults(func=_index_rebuild)

    dp = sub.add_parser("deploy", help="deployment files generated from a bundle")
    dsub = dp.add_subparsers(dest="deploy_command", required=True)
    tr = dsub.add_parser("triton", help="an NVIDIA Triton model repository (+ TensorRT engine commands)")
    tr.add_argument("bundle")
    tr.add_argument("out", help="model repository directory (tritonserver --model-repository OUT)")
    tr.add_argument("--max-batch", type=int, default=32, help="max_batch_size; trtexec --maxShapes batch")
    tr.add_argument("--opt-batch", type=int, default=8, help="trtexec --optShapes batch; a preferred batch size")
    tr.add_argument("--queue-delay-us", type=int, default=2000, help="dynamic batching max_queue_delay_microseconds")
    tr.add_argument("--instances", type=int, default=1, help="model instances per device")
    tr.add_argument("--gpu", action="store_true", help="KIND_GPU instance groups (onnxruntime backend)")
    tr.add_argument("--backend", choices=["onnxruntime", "tensorrt"], default="onnxruntime")
    tr.add_argument("--fp16", action="store_true", help="tensorrt: build fp16 engines")
    tr.set_defaults(func=_deploy_triton)

    d = sub.add_parser("demo", help="export the bundled model, index a gallery and serve it")
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, default=8000)
    d.add_argument("--workdir", default="build/demo")
    d.add_argument("--no-serve", action="store_true", help="prepare bundle + index, then exit")
    d.set_defaults(func=_demo)

    # No -h of its own: `vistas bench --help` reaches bench/run.py's parser, which knows the options.
    be = sub.add_parser("bench", help="run the benchmarks in bench/", add_help=False)
    be.add_argument("rest", nargs=argparse.REMAINDER)
    be.set_defaults(func=_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":  # bench/run.py parses its own options (REMAINDER misses a leading --flag)
        args.rest = extra + args.rest
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except Exception as e:
        if not _refusal(e):
            raise
        print(f"vistas {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
