<?php
/**
 * Plugin Name: authshim identity
 * Description: Trust the user authshim names in X-Forwarded-User, from authshim's address only.
 *
 * A must-use plugin: copy it to wp-content/mu-plugins/ (Debian: /var/lib/wordpress/wp-content/
 * mu-plugins/). authshim strips every client copy of the header; AUTHSHIM_PROXIES (define it in
 * the site's config to change it) refuses the header from any other peer, in case WordPress is
 * reachable without authshim.
 */

if (!defined('ABSPATH')) {
    exit;
}
if (!defined('AUTHSHIM_PROXIES')) {
    define('AUTHSHIM_PROXIES', '127.0.0.1 ::1');
}

/** Whether this request comes from authshim. */
function authshim_from_proxy() {
    $peers = preg_split('/\s+/', trim(AUTHSHIM_PROXIES));
    return in_array($_SERVER['REMOTE_ADDR'] ?? '', $peers, true);
}

/** The id of the user authshim names, or 0. */
function authshim_user_id() {
    $login = $_SERVER['HTTP_X_FORWARDED_USER'] ?? '';
    if ($login === '' || !authshim_from_proxy()) {
        return 0;  // SECURITY: only authshim may name a user
    }
    $user = get_user_by('login', $login);
    return $user ? (int) $user->ID : 0;
}

// Pages and the REST API: the named user is the current user (after the cookie checks).
add_filter('determine_current_user', function ($user_id) {
    $named = authshim_user_id();
    return $named ?: $user_id;
}, 30);

// wp-admin checks its own auth cookie (auth_redirect()), so a user authshim answered without
// asking WordPress gets WordPress's cookies too, for this request and the next ones.
add_action('init', function () {
    $id = authshim_user_id();
    if (!$id || !is_admin() || wp_validate_auth_cookie('', is_ssl() ? 'secure_auth' : 'auth') === $id) {
        return;
    }
    wp_set_auth_cookie($id, false, is_ssl());
    $expires = time() + 2 * DAY_IN_SECONDS;
    $scheme = is_ssl() ? 'secure_auth' : 'auth';
    $_COOKIE[is_ssl() ? SECURE_AUTH_COOKIE : AUTH_COOKIE] = wp_generate_auth_cookie($id, $expires, $scheme);
    $_COOKIE[LOGGED_IN_COOKIE] = wp_generate_auth_cookie($id, $expires, 'logged_in');
}, 1);

// authshim's look-up uses an application password over the private link to WordPress, which
// WordPress otherwise only accepts over HTTPS.
add_filter('wp_is_application_passwords_available', function ($available) {
    return $available || authshim_from_proxy();
});
