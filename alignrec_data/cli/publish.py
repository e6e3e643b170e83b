"""``alignrec-data publish FOLDER --repo-id ORG/NAME``: upload a release to the Hub."""

from __future__ import annotations

from pathlib import Path

import click

from alignrec_data.cli._common import emit, format_option


@click.command("publish")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--repo-id", required=True, help="Hub dataset repo, ORG/NAME (created if missing).")
@click.option(
    "--revision", default=None, help="Branch to commit to (created if missing) [default: main]."
)
@click.option("--private", is_flag=True, help="Create the repo private (no effect if it exists).")
@click.option("--dry-run", is_flag=True, help="List the files and sizes that would be uploaded.")
@click.option(
    "--endpoint",
    default=None,
    help="Hub URL, http(s)://HOST[:PORT] [default: $HF_ENDPOINT, else https://huggingface.co].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="Deadline to connect, to wait for each answer, and of each Hub call in total (the "
    "upload gets one more second per MB of files).",
)
@format_option
def command(
    folder: Path,
    repo_id: str,
    revision: str | None,
    private: bool,
    dry_run: bool,
    endpoint: str | None,
    timeout: float,
    fmt: str,
) -> None:
    """Upload a release FOLDER (from `alignrec-data release`) as a Hub dataset repo.

    Creates the repo if needed, then uploads the folder with upload_folder; files the Hub already
    has are skipped, so publishing an unchanged folder again commits nothing. The token comes
    from $HF_TOKEN or `hf auth login`; it is never printed. The folder must hold its manifest
    alignrec_release.json and every shard must match it (checked also with --dry-run). A Hub
    that does not answer within --timeout ends the command with an error.

    \b
    Examples:
      alignrec-data publish data/amazon-baby/release --repo-id my-org/alignrec-baby --dry-run
      alignrec-data publish data/amazon-baby/release --repo-id my-org/alignrec-baby
      alignrec-data publish release/baby --repo-id my-org/alignrec-baby --revision v0.1 --private
      alignrec-data publish release/baby --repo-id my-org/alignrec-baby --timeout 300
    """  # noqa: D301 (click needs a real \b)
    from alignrec_data.publish import publish_release

    result = publish_release(
        folder,
        repo_id,
        revision=revision,
        private=private,
        dry_run=dry_run,
        endpoint=endpoint,
        timeout=timeout,
    )
    if result.dry_run:
        lines = [
            f"dry run: would upload {len(result.files)} files ({result.total_bytes:,} bytes) "
            f"to {repo_id}@{result.revision}"
        ]
        lines += [f"  {b:>14,}  {p}" for p, b in result.files]
    elif result.committed:
        lines = [f"published {folder} to {result.url} @ {result.revision}: commit {result.commit}"]
    else:
        lines = [
            f"{repo_id}@{result.revision} already up to date (commit {result.commit}); "
            "nothing uploaded"
        ]
    emit(fmt, result.to_dict(), lines)
