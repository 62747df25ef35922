"""The course hub's commands: ``python -m hub COMMAND`` (the Makefile's ``hub*`` targets).

setup                  install what the hub needs, prepare the course, add the roster
install                only the machine's part of setup: apt, the proxy, the environment
start | stop | status  the hub (in the background; stop is clean: servers, proxy, hub)
students               OS accounts and gradebook entries for the roster (all or nothing)
release ASSIGNMENT     generate the assignment from solutions/ and release it to students
collect ASSIGNMENT     copy the latest submissions into the course's grading/submitted/
return-feedback ASSIGNMENT   release the generated feedback to the students
course-root            print the hub's nbgrader course root (for nf_course.instructor)
chown                  give the course root back to the grader account (after root's jobs)
launch-url CHAPTER     the book's launch link for a chapter (book/<name>.md)
"""

from __future__ import annotations

import argparse
import sys
import time

from hub import accounts, book, control, course, install, settings


def install_machine(hub: settings.HubSettings) -> None:
    started = time.monotonic()
    install.install_system_packages()
    install.install_proxy()
    built = install.install_environment(hub)
    state = "built" if built else "up to date"
    print(f"course environment {hub.environment}: {state} ({time.monotonic() - started:.0f} s)")


def setup(hub: settings.HubSettings, system: bool) -> None:
    started = time.monotonic()
    if system:
        install_machine(hub)
    if course.close_repository():
        print(f"{settings.REPOSITORY}: closed to other accounts (it holds solutions/)")
    course.prepare(hub)
    print(
        f"course {hub.course_id}: {hub.course_root} (grader {hub.grader}), exchange "
        f"{hub.exchange}, book mirror {hub.book_mirror}"
    )
    if hub.config_file != settings.DEFAULT_CONFIG:
        print(f"(another configuration file: _config.yml left as it is; its hub is {hub.url})")
    elif book.sync_launch_url(hub):
        print(f"_config.yml: launch_buttons.jupyterhub_url set to {hub.url}")
    if hub.roster.is_file():
        new = [s for s in accounts.parse_roster(hub.roster) if not accounts.account_exists(s.id)]
        if new:
            course.add_students(hub)
            print(f"{len(new)} students added from {hub.roster}")
    else:
        print(f"no roster at {hub.roster} yet: add students later with `make hub-students`")
    print(f"set-up done in {time.monotonic() - started:.0f} s; start the hub with `make hub`")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hub",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="the hub's TOML file (default hub/course_hub.toml)")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("setup")
    command.add_argument("--no-install", action="store_true", help="skip apt, npm and the env")
    for name in ("install", "start", "stop", "status", "students", "course-root", "chown"):
        commands.add_parser(name)
    for name in ("release", "collect", "return-feedback"):
        commands.add_parser(name).add_argument("assignment")
    commands.add_parser("launch-url").add_argument("chapter")
    args = parser.parse_args(argv)
    try:
        hub = settings.load(args.config)
        if args.command == "setup":
            setup(hub, system=not args.no_install)
        elif args.command == "install":
            install_machine(hub)
        elif args.command == "course-root":
            print(hub.course_root)
        elif args.command == "chown":
            course.give_to_grader(hub)
        elif args.command == "start":
            pid = control.start(hub)
            print(f"the hub runs (pid {pid}) at {hub.url}; log {control.log_file(hub)}")
        elif args.command == "stop":
            print("the hub stopped" if control.stop(hub) else "the hub was not running")
        elif args.command == "status":
            pid = control.running_pid(hub)
            print(f"running (pid {pid}) at {hub.url}" if pid else "not running")
        elif args.command == "students":
            added = course.add_students(hub)
            print(f"{len(added)} students added: {', '.join(s.id for s in added)}")
        elif args.command == "release":
            course.release(hub, args.assignment)
            print(f"{args.assignment} released to {hub.exchange / hub.course_id / 'outbound'}")
        elif args.command == "collect":
            course.collect(hub, args.assignment)
            print(f"{args.assignment} collected into {hub.course_root / 'grading/submitted'}")
        elif args.command == "return-feedback":
            course.return_feedback(hub, args.assignment)
            print(f"feedback on {args.assignment} released")
        else:
            print(book.launch_url(hub, args.chapter))
    except (
        settings.HubConfigError,
        accounts.RosterError,
        course.CourseError,
        control.HubError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
