"""The alarms of a channel's two inputs, and what they mean for failover.

Three questions are asked of an input, all from the alarms it has now and since when:

- *held*: do its triggers hold — ``any`` (one trigger) or ``all`` (every trigger) has a
  matching alarm raised at least ``hold_s`` ago? Then switching away from it is due.
- *fit*: may we switch to it? Not when its own trigger condition is asserted (hold-offs
  aside: a standby is judged on what it shows now) nor when it has an ``unfit_alarms`` alarm.
- *clean since*: since when has it had no trigger or unfit alarm at all? MediaLive's
  ``ErrorClearTimeMsec``: a recovered input must be condition-free this long to count as
  healthy, and with primary preferred that is the failback delay.

With ``combine: all`` fit and clean differ on purpose: a standby showing only one half of "dead
air" (frozen picture, sound fine) is still better than dead air, but a failback waits for a
primary without any of it.
"""

from __future__ import annotations

from failover.policy_settings import FailoverSettings, matches


class AlarmBook:
    """Active alarms per input (name → raised at, monotonic s) and each input's clean period."""

    def __init__(self, settings: FailoverSettings) -> None:
        self._settings = settings
        self._since: dict[str, dict[str, float]] = {settings.primary: {}, settings.backup: {}}
        self._clean_since: dict[str, float | None] = {settings.primary: None}
        self._clean_since[settings.backup] = None
        self._started = False

    def start(self, at_s: float) -> None:
        """Inputs with no alarm when the policy first hears of time count as clean from then."""
        if not self._started:
            self._started = True
            for name in self._since:
                if not self._dirty(name):
                    self._clean_since[name] = at_s

    def knows(self, input_name: str) -> bool:
        return input_name in self._since

    def update(self, input_name: str, alarm: str, active: bool, at_s: float) -> None:
        """Record a raise (keeping the first raise time on a repeat) or a clear."""
        alarms = self._since[input_name]
        if active:
            alarms.setdefault(alarm, at_s)
        else:
            alarms.pop(alarm, None)
        if self._dirty(input_name):
            self._clean_since[input_name] = None
        elif self._clean_since[input_name] is None:
            self._clean_since[input_name] = at_s

    def alarms(self, input_name: str) -> tuple[str, ...]:
        return tuple(sorted(self._since[input_name]))

    def raised_at(self, input_name: str, alarm: str) -> float | None:
        return self._since[input_name].get(alarm)

    def clean_since(self, input_name: str) -> float | None:
        return self._clean_since[input_name]

    def _matching(self, input_name: str) -> list[list[tuple[str, float]]]:
        """Per trigger, the input's alarms it matches with the time each one holds from."""
        alarms = self._since[input_name]
        return [
            [
                (name, since + trigger.hold_s)
                for name, since in alarms.items()
                if trigger.matches(name)
            ]
            for trigger in self._settings.triggers
        ]

    def asserted(self, input_name: str) -> bool:
        """The trigger condition is true on the input's alarms, hold-offs aside."""
        found = [bool(per) for per in self._matching(input_name)]
        return all(found) if self._settings.combine == "all" else any(found)

    def held(self, input_name: str, now_s: float) -> tuple[str, ...] | None:
        """The alarms that make the trigger condition hold now, or None when it does not."""
        per_trigger = [
            [name for name, ready in per if ready <= now_s] for per in self._matching(input_name)
        ]
        if self._settings.combine == "all":
            if not all(per_trigger):
                return None
        elif not any(per_trigger):
            return None
        return tuple(sorted({name for per in per_trigger for name in per}))

    def holds_at(self, input_name: str) -> float | None:
        """When the asserted condition will hold if no alarm changes (None if not asserted)."""
        readies = [
            min(ready for _, ready in per) if per else None for per in self._matching(input_name)
        ]
        known = [ready for ready in readies if ready is not None]
        if self._settings.combine == "all":
            return max(known) if len(known) == len(readies) else None
        return min(known) if known else None

    def trigger_alarms(self, input_name: str) -> tuple[str, ...]:
        """The input's alarms that match a trigger, held or not."""
        return tuple(sorted({name for per in self._matching(input_name) for name, _ in per}))

    def unfit(self, input_name: str) -> tuple[str, ...]:
        """Why the input must not be switched to (its alarms that say so); empty when fit."""
        alarms = self._since[input_name]
        reasons = {name for name in alarms if self._unfit_alarm(name)}
        if self.asserted(input_name):
            reasons.update(self.trigger_alarms(input_name))
        return tuple(sorted(reasons))

    def _unfit_alarm(self, alarm: str) -> bool:
        return any(matches(pattern, alarm) for pattern in self._settings.unfit_alarms)

    def _dirty(self, input_name: str) -> bool:
        return any(
            self._unfit_alarm(name) or any(t.matches(name) for t in self._settings.triggers)
            for name in self._since[input_name]
        )
