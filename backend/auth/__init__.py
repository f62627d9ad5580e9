"""Login for owners (mini-program code) and staff (WeCom OAuth code); token refresh and logout."""
