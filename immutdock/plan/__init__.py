"""Plan (pure): from the App and the observed state to what a release, rollback or heal does."""
