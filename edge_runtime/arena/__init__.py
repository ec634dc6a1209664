"""Static arena planning: tensor lifetimes, offset planners, in-place aliasing, plan reports."""
