"""Many sources over time: the sources file, slots, the fleet's membership, one source's state
machine, status reports and metrics. It runs ``producer``'s one run of one list; ``producer``
never imports it."""
