#!/usr/bin/env python3
"""Bank transfers over FerrisDB's public gRPC service, ferrisdb.v1.Transactions.

An example client for any language that speaks gRPC: it shows how to run strictly
serializable, interactive transactions with nothing but the protos
(proto/ferrisdb/v1/transactions.proto) and a retry loop, and it checks that every transfer
was applied exactly once, even when commits are retried after an unknown result.

    python3 examples/python/bank_transfer.py --target 127.0.0.1:4501

The workload:
  * a setup transaction writes N accounts with a balance of 100 each and a counter of 0;
  * C threads each make T transfers: read two accounts and the counter, move 1..10 units
    from one account to the other, increment the counter;
  * a final read checks that the total is still N * 100, that no balance is negative and that
    the counter equals the number of transfers the threads saw commit (a transfer applied
    twice would leave the counter ahead of that number).

Values are decimal ASCII integers ("100", "0", "57"), so `ferrisdb get` shows them as is.
Keys (bytes, all under the prefix): <prefix>acct/0000 ... <prefix>acct/NNNN and
<prefix>transfers.

Exit status: 0 all checks passed, 1 a check failed (the data is wrong), 2 an error (the
cluster could not be reached, a call failed in a way that is not retried, a reply broke the
protocol, or a bad command line).

Needs grpcio and grpcio-tools (examples/python/requirements.txt; scripts/python-env.sh makes
a virtualenv with both). The Python stubs are generated from the protos at start-up.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import random
import secrets
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

try:
    import grpc
    import grpc_tools
    from grpc_tools import protoc
except ImportError as e:  # pragma: no cover - depends on the environment
    print(
        f"bank_transfer: error: {e}: install grpcio and grpcio-tools "
        "(pip install -r examples/python/requirements.txt, or run scripts/python-env.sh)",
        file=sys.stderr,
    )
    sys.exit(2)

PROG = "bank_transfer"

# The protos, relative to the proto include root (<repo>/proto). Every file of the package is
# compiled, so that whatever transactions.proto imports (coordinator.proto, kv.proto,
# types.proto today) is there.
PROTO_PACKAGE_DIR = "ferrisdb/v1"
SERVICE_PROTO = "ferrisdb/v1/transactions.proto"

# --------------------------------------------------------------------------------------------
# Stubs: generated from the protos into a temporary directory that becomes a sys.path root.
# --------------------------------------------------------------------------------------------


def load_stubs(proto_dir: Path) -> Tuple[Any, Any, Any]:
    """Compiles the protos and imports them; returns (types_pb2, transactions_pb2,
    transactions_pb2_grpc)."""
    if not (proto_dir / SERVICE_PROTO).is_file():
        raise SetupError(f"no {SERVICE_PROTO} under {proto_dir} (set --proto-dir)")
    proto_files = sorted((proto_dir / PROTO_PACKAGE_DIR).glob("*.proto"))

    out = Path(tempfile.mkdtemp(prefix="ferrisdb-stubs-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    # grpcio-tools ships google/protobuf/*.proto; our protos import none today, but keep the
    # include so that adding a well-known type to them does not break this script.
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    argv = [
        "grpc_tools.protoc",
        f"--proto_path={proto_dir}",
        f"--proto_path={well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *(str(f) for f in proto_files),
    ]
    if protoc.main(argv) != 0:  # protoc has printed its errors to stderr
        raise SetupError(f"protoc could not compile the protos under {proto_dir}")

    # The generated modules import each other as `ferrisdb.v1.types_pb2`: make `ferrisdb` and
    # `ferrisdb.v1` regular packages under `out` and put `out` first on sys.path, so no other
    # `ferrisdb` directory (the repository has one) can shadow them.
    for package in (out / "ferrisdb", out / "ferrisdb" / "v1"):
        (package / "__init__.py").touch()
    sys.path.insert(0, str(out))
    return (
        importlib.import_module("ferrisdb.v1.types_pb2"),
        importlib.import_module("ferrisdb.v1.transactions_pb2"),
        importlib.import_module("ferrisdb.v1.transactions_pb2_grpc"),
    )


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

# FerrisDB error codes (FoundationDB's numbering) that this client treats specially. A failed
# call carries its code as ASCII decimal in the trailing metadata entry `ferrisdb-error-code`.
ERROR_CODE_KEY = "ferrisdb-error-code"
TRANSACTION_TOO_OLD = 1007  # FAILED_PRECONDITION: the read version left the MVCC window
NOT_COMMITTED = 1020  # ABORTED: a conflict
COMMIT_UNKNOWN_RESULT = 1021  # UNKNOWN: the commit may or may not have happened
COMMIT_UNKNOWN_RESULT_FATAL = 1041  # the outcome can no longer be learned: never retried

# gRPC codes after which the whole transaction is run again (with the same idempotency id).
RETRYABLE_STATUS = {
    grpc.StatusCode.ABORTED,  # 1020 conflict
    grpc.StatusCode.UNAVAILABLE,  # 1500 / 1200 / 1009 / 1037, or no connection
    grpc.StatusCode.UNKNOWN,  # 1021 commit unknown result, or a lost reply
    grpc.StatusCode.DEADLINE_EXCEEDED,  # our per-call deadline, or 1031
}


class SetupError(Exception):
    """The example cannot start (bad proto dir, protoc failure, unreachable target)."""


class ProtocolError(Exception):
    """A reply that breaks the protocol (a server bug)."""


class CheckFailed(Exception):
    """The data is not what the transfers must have left (exit status 1)."""


class FerrisDBError(Exception):
    """A failed RPC: its gRPC status code, message and FerrisDB error code (None if absent)."""

    def __init__(self, rpc: str, err: grpc.RpcError):
        self.rpc = rpc
        self.status: grpc.StatusCode = err.code()
        self.details: str = err.details() or ""
        self.error_code: Optional[int] = None
        self.gave_up = ""  # set by run() when it stops retrying a retryable error
        for key, value in err.trailing_metadata() or ():
            if key == ERROR_CODE_KEY:
                try:
                    self.error_code = int(value)
                except ValueError:
                    pass
        super().__init__(str(self))

    def is_retryable(self) -> bool:
        """Whether the transaction should be run again (with the same idempotency id)."""
        if self.error_code == COMMIT_UNKNOWN_RESULT_FATAL:
            return False  # the id is forgotten: a retry could apply the transaction twice
        if self.status in RETRYABLE_STATUS:
            return True
        # Too old: a new attempt gets a new read version. (1038 wrong shard, also
        # FAILED_PRECONDITION, is the coordinator's business, never a client's.)
        return (
            self.status == grpc.StatusCode.FAILED_PRECONDITION
            and self.error_code == TRANSACTION_TOO_OLD
        )

    def cause(self) -> str:
        """A short label for retry statistics: `ABORTED/1020`, `UNAVAILABLE/-`."""
        code = "-" if self.error_code is None else str(self.error_code)
        return f"{self.status.name}/{code}"

    def __str__(self) -> str:
        code = "none" if self.error_code is None else str(self.error_code)
        gave_up = f" ({self.gave_up})" if self.gave_up else ""
        return (
            f"{self.rpc} failed: {self.status.name} ({ERROR_CODE_KEY} {code}): "
            f"{self.details}{gave_up}"
        )


# --------------------------------------------------------------------------------------------
# The client-side transaction: everything a FerrisDB transaction needs lives here, in the
# client. The service keeps no state between calls.
# --------------------------------------------------------------------------------------------


class Database:
    """A channel to one gateway and the Transactions stub, plus the retry policy."""

    def __init__(
        self,
        target: str,
        stubs: Tuple[Any, Any, Any],
        rpc_timeout: float,
        run_timeout: float,
        max_attempts: int,
    ):
        self.target = target
        self.types_pb2, self.pb2, pb2_grpc = stubs
        self.channel = grpc.insecure_channel(target)
        self.stub = pb2_grpc.TransactionsStub(self.channel)
        self.rpc_timeout = rpc_timeout  # deadline of every single call
        self.run_timeout = run_timeout  # bound on a whole run(), all attempts together
        self.max_attempts = max_attempts

    def wait_connected(self, timeout: float) -> None:
        """Waits until the channel connects; SetupError naming the target if it does not."""
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise SetupError(
                f"cannot reach {self.target}: no connection within {timeout:g} s "
                "(UNAVAILABLE; is a gateway listening there? `cluster up` prints its address)"
            ) from None

    def call(self, name: str, request: Any, deadline: float) -> Any:
        """One RPC with a deadline: the per-call timeout, cut short by the run's deadline."""
        timeout = max(0.001, min(self.rpc_timeout, deadline - time.monotonic()))
        try:
            return getattr(self.stub, name)(request, timeout=timeout)
        except grpc.RpcError as err:
            raise FerrisDBError(name, err) from None

    def begin(self, deadline: float) -> "Transaction":
        """Begin: a read version at which every acknowledged commit is visible."""
        reply = self.call("Begin", self.pb2.BeginRequest(), deadline)
        return Transaction(self, reply.read_version, deadline)

    def run(self, fn: Callable[["Transaction"], Any]) -> "RunOutcome":
        """Runs fn(tx) in a transaction and commits it, retrying until it commits.

        The rules, for a client in any language:
          * one random idempotency id per logical transaction, sent with every attempt's
            Commit, so that a retry of a commit that did land is answered already_committed
            instead of being applied a second time;
          * first_attempt_read_version: the read version of the first attempt whose Commit
            carried that id, sent with every attempt (the coordinator looks for the id among
            the commits since then);
          * each attempt starts from scratch: a new read version, fn run again (so fn must
            have no side effects outside the transaction), a new commit;
          * retried: ABORTED (1020, a conflict), UNAVAILABLE, UNKNOWN (1021, commit unknown
            result, or a lost connection), DEADLINE_EXCEEDED and FAILED_PRECONDITION with
            1007 (transaction too old); everything else, in particular INVALID_ARGUMENT and
            1041 (commit_unknown_result_fatal), is raised;
          * backoff between attempts: uniform in [d/2, d], d = min(1 ms * 2^n, 1 s);
          * at most max_attempts attempts and run_timeout seconds in all. Keep run_timeout
            well below the coordinator's idempotency retention (60 s by default), or a late
            retry fails with 1041.
        """
        idempotency_id = secrets.token_bytes(16)
        first_attempt_read_version = 0  # 0 until an attempt has sent its Commit
        deadline = time.monotonic() + self.run_timeout
        retries: List[str] = []
        for attempt in range(self.max_attempts):
            try:
                tx = self.begin(deadline)
                value = fn(tx)
                if not first_attempt_read_version and tx.has_writes():
                    first_attempt_read_version = tx.read_version
                reply = tx.commit(idempotency_id, first_attempt_read_version)
                return RunOutcome(value, reply, retries)
            except FerrisDBError as err:
                if not err.is_retryable():
                    raise
                if time.monotonic() >= deadline or attempt + 1 == self.max_attempts:
                    err.gave_up = f"gave up after {attempt + 1} attempts"
                    raise
                retries.append(err.cause())
            delay = min(0.001 * 2**attempt, 1.0)
            delay = random.uniform(delay / 2, delay)
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
        raise AssertionError("unreachable: the last attempt raises")


class RunOutcome(NamedTuple):
    value: Any  # what fn returned
    commit: Any  # the CommitResponse, or None for a read-only transaction
    retries: List[str]  # the cause of each failed attempt, e.g. "ABORTED/1020"


class Transaction:
    """One attempt: a read version, the ranges read and the buffered writes."""

    def __init__(self, db: Database, read_version: int, deadline: float):
        self.db = db
        self.read_version = read_version
        self.deadline = deadline
        self.read_conflict_ranges: List[Any] = []  # KeyRange: each Get reply's read_range
        self.mutations: List[Any] = []  # Mutation, in order

    def get(self, key: bytes) -> Optional[bytes]:
        """The key's value at the read version (None if absent); a serializable read: the
        reply's read_range joins the read conflict ranges, so the commit fails with ABORTED
        if another transaction wrote the key after our read version."""
        # A transaction sees its own writes: answer from the buffered mutations first.
        for m in reversed(self.mutations):
            if m.WhichOneof("kind") == "set" and m.set.key == key:
                return m.set.value
        reply = self.db.call(
            "Get",
            self.db.pb2.TransactionGetRequest(read_version=self.read_version, key=key),
            self.deadline,
        )
        if not reply.HasField("read_range"):
            raise ProtocolError(f"Get({key!r}) answered without a read_range")
        self.read_conflict_ranges.append(reply.read_range)
        return reply.value if reply.present else None

    def set(self, key: bytes, value: bytes) -> None:
        """Buffers a write; nothing is sent before commit."""
        mutation = self.db.types_pb2.Mutation()
        mutation.set.key = key
        mutation.set.value = value
        self.mutations.append(mutation)

    def has_writes(self) -> bool:
        return bool(self.mutations)

    def commit(self, idempotency_id: bytes, first_attempt_read_version: int) -> Any:
        """Sends the whole transaction; returns the CommitResponse (None for a read-only
        transaction, which has nothing to commit: its reads were all at one version)."""
        if not self.mutations:
            return None
        request = self.db.pb2.TransactionCommitRequest(
            read_version=self.read_version,
            mutations=self.mutations,
            read_conflict_ranges=self.read_conflict_ranges,
            idempotency_id=idempotency_id,
            first_attempt_read_version=first_attempt_read_version,
        )
        reply = self.db.call("Commit", request, self.deadline)
        # The versionstamp is the commit version (8 bytes big-endian) and its 2-byte order.
        stamp = bytes(reply.versionstamp)
        if len(stamp) != 10 or int.from_bytes(stamp[:8], "big") != reply.commit_version:
            raise ProtocolError(
                f"Commit answered version {reply.commit_version} with versionstamp {stamp.hex()}"
            )
        if not reply.already_committed and reply.commit_version <= self.read_version:
            raise ProtocolError(
                f"Commit answered version {reply.commit_version}, "
                f"not after read version {self.read_version}"
            )
        return reply


# --------------------------------------------------------------------------------------------
# The bank workload
# --------------------------------------------------------------------------------------------

INITIAL_BALANCE = 100


def encode(n: int) -> bytes:
    """Balances and the counter are decimal ASCII integers."""
    return str(n).encode("ascii")


def decode(key: bytes, value: Optional[bytes]) -> int:
    if value is None:
        raise CheckFailed(f"{key!r} is missing")
    try:
        return int(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise CheckFailed(f"{key!r} holds {value!r}, not a decimal integer") from None


@dataclass
class Stats:
    transfers: int = 0  # transfers whose run() returned: each must be applied exactly once
    skipped: int = 0  # picks whose source account was empty (read-only, nothing committed)
    already_committed: int = 0  # transfers whose final Commit answered already_committed
    retries: Dict[str, int] = field(default_factory=dict)  # cause -> count

    def record(self, outcome: RunOutcome) -> None:
        for cause in outcome.retries:
            self.retries[cause] = self.retries.get(cause, 0) + 1
        if outcome.commit is not None and outcome.commit.already_committed:
            self.already_committed += 1

    def merge(self, other: "Stats") -> None:
        self.transfers += other.transfers
        self.skipped += other.skipped
        self.already_committed += other.already_committed
        for cause, n in other.retries.items():
            self.retries[cause] = self.retries.get(cause, 0) + n


class Bank:
    def __init__(self, db: Database, prefix: bytes, accounts: int):
        self.db = db
        self.accounts = [prefix + b"acct/%04d" % i for i in range(accounts)]
        self.counter = prefix + b"transfers"

    def setup(self, stats: Stats) -> None:
        def write_all(tx: Transaction) -> None:
            for key in self.accounts:
                tx.set(key, encode(INITIAL_BALANCE))
            tx.set(self.counter, encode(0))

        stats.record(self.db.run(write_all))

    def worker(self, transfers: int, seed: int, stop: threading.Event) -> Stats:
        """One client thread: `transfers` transfers between random pairs of accounts."""
        rng = random.Random(seed)
        stats = Stats()
        for _ in range(transfers):
            if stop.is_set():
                break
            src, dst = (self.accounts[i] for i in rng.sample(range(len(self.accounts)), 2))

            def transfer(tx: Transaction) -> int:
                # Every read goes into the read conflict ranges: if another transfer changes
                # either account or the counter after our read version, Commit is ABORTED.
                src_balance = decode(src, tx.get(src))
                dst_balance = decode(dst, tx.get(dst))
                count = decode(self.counter, tx.get(self.counter))
                if src_balance == 0:
                    return 0  # nothing to move: no writes, so nothing is committed
                amount = rng.randint(1, min(10, src_balance))
                tx.set(src, encode(src_balance - amount))
                tx.set(dst, encode(dst_balance + amount))
                tx.set(self.counter, encode(count + 1))
                return amount

            outcome = self.db.run(transfer)
            stats.record(outcome)
            if outcome.value:
                stats.transfers += 1
            else:
                stats.skipped += 1
        return stats

    def verify(self, stats: Stats) -> List[str]:
        """Reads everything in one transaction; returns the problems found (none: all good)."""

        def read_all(tx: Transaction) -> Tuple[List[int], int]:
            balances = [decode(key, tx.get(key)) for key in self.accounts]
            return balances, decode(self.counter, tx.get(self.counter))

        outcome = self.db.run(read_all)
        stats.record(outcome)
        balances, counter = outcome.value
        problems = []
        expected_total = INITIAL_BALANCE * len(self.accounts)
        if sum(balances) != expected_total:
            problems.append(f"total is {sum(balances)}, expected {expected_total}")
        for key, balance in zip(self.accounts, balances):
            if balance < 0:
                problems.append(f"{key!r} is negative: {balance}")
        if counter != stats.transfers:
            problems.append(
                f"the counter says {counter} transfers were applied but {stats.transfers} "
                "committed (more: one was applied twice; fewer: an acknowledged one was lost)"
            )
        return problems


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    default_proto_dir = Path(__file__).resolve().parents[2] / "proto"
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Concurrent bank transfers over ferrisdb.v1.Transactions, checked for "
        "exactly-once commits. Exit status: 0 checks passed, 1 a check failed, 2 an error.",
    )
    p.add_argument("--target", required=True, help="a gateway's HOST:PORT")
    p.add_argument("--accounts", type=int, default=10, help="number of accounts (default 10)")
    p.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    p.add_argument(
        "--transfers", type=int, default=50, help="transfers per client thread (default 50)"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument(
        "--prefix",
        default=None,
        help="key prefix, UTF-8 (default pybank/<random run id>/)",
    )
    p.add_argument(
        "--proto-dir",
        type=Path,
        default=default_proto_dir,
        help=f"proto include root (default {default_proto_dir})",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the first connection (default 10)",
    )
    p.add_argument(
        "--rpc-timeout", type=float, default=5.0, help="deadline of each call (default 5 s)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="bound on one transaction with all its retries (default 30 s)",
    )
    p.add_argument(
        "--max-attempts", type=int, default=100, help="attempts per transaction (default 100)"
    )
    args = p.parse_args(argv)
    if args.accounts < 2:
        p.error("--accounts must be at least 2")
    if args.clients < 1 or args.transfers < 0 or args.max_attempts < 1:
        p.error("--clients and --max-attempts must be at least 1, --transfers at least 0")
    if min(args.connect_timeout, args.rpc_timeout, args.timeout) <= 0:
        p.error("timeouts must be positive")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    prefix = (
        args.prefix.encode("utf-8")
        if args.prefix is not None
        else b"pybank/" + secrets.token_hex(4).encode("ascii") + b"/"
    )
    try:
        stubs = load_stubs(args.proto_dir)
        db = Database(args.target, stubs, args.rpc_timeout, args.timeout, args.max_attempts)
        db.wait_connected(args.connect_timeout)
        print(
            f"{PROG}: target {args.target}, prefix {prefix!r}, seed {seed}, "
            f"{args.accounts} accounts, {args.clients} clients x {args.transfers} transfers",
            flush=True,
        )
        bank = Bank(db, prefix, args.accounts)
        stats = Stats()
        bank.setup(stats)

        stop = threading.Event()  # set when a thread fails, so the others stop early
        with ThreadPoolExecutor(max_workers=args.clients) as pool:

            def worker(i: int) -> Stats:
                try:
                    return bank.worker(args.transfers, seed * 1000 + i, stop)
                except BaseException:
                    stop.set()
                    raise

            futures = [pool.submit(worker, i) for i in range(args.clients)]
            for f in futures:
                stats.merge(f.result())  # re-raises a thread's exception

        problems = bank.verify(stats)
    except CheckFailed as e:
        print(f"{PROG}: FAILED: {e}", file=sys.stderr)
        return 1
    except FerrisDBError as e:
        hint = ""
        if e.status == grpc.StatusCode.UNAVAILABLE:
            hint = f" (cannot reach {args.target}, or the cluster is unavailable)"
        elif e.status == grpc.StatusCode.UNIMPLEMENTED:
            hint = f" ({args.target} does not serve ferrisdb.v1.Transactions)"
        print(f"{PROG}: error: {e}{hint}", file=sys.stderr)
        return 2
    except (SetupError, ProtocolError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2

    retries = sum(stats.retries.values())
    if retries:
        causes = ", ".join(f"{n} {c}" for c, n in sorted(stats.retries.items()))
        print(f"{PROG}: retries by cause (gRPC status/ferrisdb-error-code): {causes}")
    if problems:
        for problem in problems:
            print(f"{PROG}: FAILED: {problem}", file=sys.stderr)
        return 1
    total = INITIAL_BALANCE * args.accounts
    print(
        f"{PROG}: {stats.transfers} transfers committed once each "
        f"({stats.already_committed} answered already_committed, {retries} retries, "
        f"{stats.skipped} skipped), total {total} unchanged"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
