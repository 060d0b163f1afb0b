"""Config (pure): the user's compose file and x-immutdock block, loaded into a frozen, validated App."""
