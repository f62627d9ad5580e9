"""`python -m bench [timeline] [options]` — runs the benchmarks (all of them by default).

Needs MariaDB (BENCH_DATABASE_URL, default mysql+pymysql://root@127.0.0.1:3306/dealerloop_bench;
the database is dropped and recreated when the cached dataset does not match).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python -m bench` from the repo root, or an installed checkout
    sys.path.insert(0, str(REPO_ROOT))

BENCHMARKS = ("timeline", "flashsale", "paynotify", "wecomcallback", "couponclaim", "booking")


def main(argv: list[str] | None = None) -> int:
    from bench import datagen

    defaults = datagen.Spec()
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("benchmarks", nargs="*", default=[], help=f"which of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument(
        "--duration",
        type=float,
        default=15.0,
        help="seconds measured per scenario and implementation (all rounds together)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved app/baseline rounds the duration is split into"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up before each measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="client connections (closed loop)")
    parser.add_argument(
        "--regenerate", action="store_true", help="rebuild the dataset even when the cached one matches"
    )
    parser.add_argument("--touchpoints", type=int, default=defaults.touchpoints, help=argparse.SUPPRESS)
    parser.add_argument("--target-touchpoints", type=int, default=defaults.target_touchpoints, help=argparse.SUPPRESS)
    parser.add_argument("--customers", type=int, default=defaults.other_customers, help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=500, help="flashsale: concurrent clients")
    parser.add_argument("--stocks", type=int, nargs="+", default=[100, 2000], help="flashsale: item stock per scenario")
    parser.add_argument(
        "--baseline-connections",
        type=int,
        default=32,
        help="flashsale/couponclaim: PyMySQL connections the baseline's client threads share",
    )
    parser.add_argument("--coupon-clients", type=int, default=2000, help="couponclaim: concurrent members")
    parser.add_argument("--coupon-stock", type=int, default=1000, help="couponclaim: the coupon template's stock")
    parser.add_argument("--orders", type=int, default=1200, help="paynotify: payment orders notified")
    parser.add_argument(
        "--duplicates", type=float, default=0.2, help="paynotify: extra deliveries, as a share of the orders"
    )
    parser.add_argument("--ack-events", type=int, default=9000, help="wecomcallback: events acknowledged")
    parser.add_argument("--burst-events", type=int, default=200, help="wecomcallback: events in the end-to-end burst")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the figures in bench/README.md")
    args = parser.parse_args(argv)

    spec = datagen.Spec(
        touchpoints=args.touchpoints, target_touchpoints=args.target_touchpoints, other_customers=args.customers
    )
    chosen = args.benchmarks or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    started = time.perf_counter()
    for name in chosen:
        if name == "timeline":
            from bench import timeline

            timeline.run(
                spec=spec,
                force_regenerate=args.regenerate,
                concurrency=args.concurrency,
                warmup=args.warmup,
                duration=args.duration,
                rounds=args.rounds,
                update_readme=not args.no_readme and spec == defaults,
            )
        elif name == "flashsale":
            from bench import flashsale

            flashsale.run(
                clients=args.clients,
                stocks=tuple(args.stocks),
                baseline_connections=args.baseline_connections,
                update_readme=not args.no_readme
                and (args.clients, args.stocks, args.baseline_connections) == (500, [100, 2000], 32),
            )
        elif name == "paynotify":
            from bench import paynotify

            paynotify.run(
                orders=args.orders,
                duplicate_share=args.duplicates,
                concurrency=args.concurrency,
                rounds=args.rounds,
                update_readme=not args.no_readme
                and (args.orders, args.duplicates, args.concurrency, args.rounds) == (1200, 0.2, 8, 3),
            )
        elif name == "wecomcallback":
            from bench import wecomcallback

            wecomcallback.run(
                ack_events=args.ack_events,
                burst_events=args.burst_events,
                concurrency=args.concurrency,
                rounds=args.rounds,
                update_readme=not args.no_readme
                and (args.ack_events, args.burst_events, args.concurrency, args.rounds) == (9000, 200, 8, 3),
            )
        elif name == "couponclaim":
            from bench import couponclaim

            couponclaim.run(
                clients=args.coupon_clients,
                stock=args.coupon_stock,
                baseline_connections=args.baseline_connections,
                update_readme=not args.no_readme
                and (args.coupon_clients, args.coupon_stock, args.baseline_connections) == (2000, 1000, 32),
            )
        elif name == "booking":
            from bench import booking

            booking.run(
                concurrency=args.concurrency,
                rounds=args.rounds,
                update_readme=not args.no_readme and (args.concurrency, args.rounds) == (8, 3),
            )
    print(f"[bench] done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
