"""Call legs: the media side of a call, behind one `MediaLeg` interface."""
