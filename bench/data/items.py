"""The two value types every reader returns and every method consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    """One labelled image. `path` is absolute so an Item means the same thing from any cwd."""

    path: str
    label: int
    classname: str


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset as the protocol sees it: the class list and three ordered item lists.

    `classnames[label]` is the name as stored on disk ('_' kept; see cards.prompt_classname).
    `split_digest` is the sha256 of the split source (split file, or file listing for ImageNet):
    it goes into cache keys and result records so a changed split is never mistaken for the old one.
    `image_root` is the directory item paths are relative to; few-shot digests hash paths relative
    to it so they agree across machines. Order of the lists matters: the sampler depends on it.
    """

    name: str
    classnames: list[str]
    train: list[Item]
    val: list[Item]
    test: list[Item]
    split_digest: str
    image_root: str = ""
    # Stable identities of the classes, in label order (ImageNet and its variants: wnids; otherwise
    # empty = the classnames). Domain generalization matches a target's classes to the source's by
    # these, e.g. ImageNet-A's 200 wnids to columns of a 1000-way head.
    class_ids: tuple[str, ...] = ()

    @property
    def ids(self) -> tuple[str, ...]:
        return self.class_ids or tuple(self.classnames)

    @property
    def num_classes(self) -> int:
        return len(self.classnames)
