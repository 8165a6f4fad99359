"""A parametric sweep's tasks that do not exist as Task records yet: its range, one template
task and a cursor (see :class:`TaskRange`)."""

from __future__ import annotations

from collections.abc import Iterator

from shared.domain.models import Task
from shared.domain.records import Record, UtcTime
from shared.domain.states import TaskState

MAX_CREATED_AHEAD = 10_000  # tasks of a range canceled alone ahead of its cursor (~80 KB)


class TaskRange(Record):
    """The tasks of a parametric sweep that do not exist as Task records yet.

    A sweep is stored as its range, one template task and a cursor: accepting or canceling
    a million-task sweep writes this one document, not a million. The scheduler creates
    tasks from the cursor as it dispatches them (ids ``first_id + cursor`` upward), in the
    same commit that moves the cursor, so a task exists exactly once. Until then a task of
    the range is Queued (Canceled once the range is canceled) and is shown as such. A task
    canceled alone before the cursor reached it is created then, as Canceled, in the same
    commit that lists it in ``created_ahead`` (:meth:`create_ahead`); the cursor skips it.
    """

    job_id: int
    first_id: int
    """The id of the sweep's first task; its tasks are first_id .. first_id + count - 1."""
    count: int
    start: int
    """The sweep index of the first task."""
    step: int = 1
    template: Task
    """The first task as it would be created; the others differ in id, index and name."""
    name_prefix: str | None = None
    """Tasks are named ``<prefix>[<index>]`` (None: all take the template's name)."""
    cursor: int = 0
    """Tasks first_id .. first_id + cursor - 1 exist as Task records."""
    canceled_time: UtcTime | None = None
    """Set when the tasks not created yet were canceled (the job was canceled)."""
    canceled_reason: str | None = None
    """Why, when the cluster canceled them (e.g. a prerequisite task failed)."""
    canceled_for: str | None = None
    """The prerequisite task name whose failure canceled them (as ``Task.canceled_for``);
    None if they were canceled otherwise (with their job)."""
    canceled_alone: bool = False
    """Canceled by a cancel of some of the job's tasks (``hpc task cancel J 100-1100``: a
    range cut off its sweep's, :mod:`shared.domain.rangecut`), not with its job or as
    dependents: each of its tasks may be requeued alone, as a task canceled alone may."""
    created_ahead: list[int] = []
    """Ids past the cursor that exist as Task records already, ascending (tasks canceled
    alone); the cursor never rests on one and drops them as it passes, so this holds only
    ids still ahead of it, at most MAX_CREATED_AHEAD (the document stays small)."""

    @property
    def id(self) -> int:
        return self.first_id

    @property
    def key(self) -> str:
        return f"{self.job_id}.range{self.first_id}"

    @property
    def priority(self) -> int:
        return self.template.priority

    @property
    def left(self) -> int:
        """Tasks not created yet."""
        return self.count - self.cursor - len(self.created_ahead)

    @property
    def open(self) -> bool:
        """Tasks are still to be created from it for the scheduler."""
        return self.left > 0 and self.canceled_time is None

    def contains(self, task_id: int) -> bool:
        """The task is one of the range's not created yet."""
        ahead = self.first_id + self.cursor <= task_id < self.first_id + self.count
        return ahead and task_id not in self.created_ahead

    def unborn_ids(self, after: int = 0) -> Iterator[int]:
        """The ids of the range's tasks not created yet, above ``after``, ascending (lazy)."""
        skip = set(self.created_ahead)
        first = max(self.first_id + self.cursor, after + 1)
        return (i for i in range(first, self.first_id + self.count) if i not in skip)

    def advance(self) -> None:
        """The task at the cursor was created (dispatched): the cursor moves past it and
        past the tasks created ahead of it that it reaches."""
        self.cursor += 1
        ahead, passed = self.created_ahead, 0  # (replaced, not changed in place: copies share)
        while passed < len(ahead) and ahead[passed] == self.first_id + self.cursor:
            passed, self.cursor = passed + 1, self.cursor + 1
        self.created_ahead = ahead[passed:]

    def create_ahead(self, task_id: int) -> None:
        """The task ``task_id``, not created yet, is created now out of order (canceled
        alone), in the commit that writes this range: the cursor will skip it."""
        if not self.contains(task_id):
            raise ValueError(f"task {task_id} is not one of range {self.key}'s to create")
        if task_id == self.first_id + self.cursor:
            self.advance()
        else:
            self.created_ahead = sorted([*self.created_ahead, task_id])

    def task(self, task_id: int) -> Task:
        """The task with this id as it is before it exists (Queued, or Canceled)."""
        k = task_id - self.first_id
        if not 0 <= k < self.count:
            raise ValueError(f"task {task_id} is not in range {self.key}")
        index = self.start + k * self.step
        task = self.template.model_copy(
            update={
                "id": task_id,
                "sweep_index": index,
                "name": f"{self.name_prefix}[{index}]" if self.name_prefix else self.template.name,
                "etag": None,
            }
        )
        if self.canceled_time is not None and k >= self.cursor:
            task.state = TaskState.CANCELED
            task.end_time = self.canceled_time
            task.error = self.canceled_reason
            task.canceled_for = self.canceled_for
        return task
